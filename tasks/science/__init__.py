"""The science: the signature plan, the work function, moderated statistics, tables."""
