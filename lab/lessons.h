/* lessons.h: the fixed teaching prose of each scenario — what its fault means and why the
 * couplings differ under it. It describes mechanisms only; what happened in a run is said by
 * narrate.c from the figures. Internal to lab/. */
#ifndef PAYLAB_LAB_LESSONS_H
#define PAYLAB_LAB_LESSONS_H

/* The mechanism behind scenario name, a few plain sentences (static storage); NULL for a
 * scenario it does not know. */
const char *lesson_for(const char *scenario);

#endif
