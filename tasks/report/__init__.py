"""The report: what it computes, its plots, its rendering, the files it writes."""
