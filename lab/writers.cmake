# The writers behind `paylab lab`: report.md (report.c, with narrate.c's measured text and
# lessons.c's fixed prose), results.csv/json (results.c), the gnuplot charts (charts.c, run
# through child.c), the terminal table (table.c); figures.c formats figures for all of them.
target_sources(paylab_lab PRIVATE
  figures.c report.c narrate.c lessons.c results.c charts.c child.c table.c)
target_link_libraries(paylab_lab PUBLIC PkgConfig::CJSON m)
