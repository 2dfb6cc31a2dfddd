/* narrate.h: the report's measured text — for one case of a scenario, a paragraph per cell
 * saying what happened, then paragraphs contrasting its modes and wait styles, every claim
 * conditioned on the figures. Internal to lab/. */
#ifndef PAYLAB_LAB_NARRATE_H
#define PAYLAB_LAB_NARRATE_H

#include <stdbool.h>
#include <stdio.h>

#include "lab.h"

/* Writes, in Markdown, the paragraphs for the cells of r whose scenario and case_label match
 * (in r's order). kase is the scenario table's case when known (its bank faults let the text
 * compare a latency with what the bank was set to take), or NULL. */
void narrate_case(FILE *f, const struct lab_results *r, const struct lab_case *kase,
                  const char *scenario, const char *case_label);

/* Writes s as Markdown text: the characters Markdown would take as syntax are escaped, and
 * in a table cell (in_table) a | is escaped and a line break becomes a space. */
void narrate_md(FILE *f, const char *s, bool in_table);

#endif
