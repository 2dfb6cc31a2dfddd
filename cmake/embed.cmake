# Turns a text file (schema.sql) into a C source defining `const char NAME[]`, so each
# binary carries its own migrations and needs no file at run time.
# Each byte is cast, so UTF-8 text (comments with § or →) fits a plain char array.
# Usage (script mode): cmake -DIN=x.sql -DOUT=x.c -DNAME=sym -P embed.cmake
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "(char)0x\\1," hex "${hex}")
file(WRITE "${OUT}" "/* generated from ${NAME}: do not edit */\nconst char ${NAME}[] = {${hex}0x00};\n")
