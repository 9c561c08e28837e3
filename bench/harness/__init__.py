"""The benchmark harness: processes, renders, statistics, sections and the report."""
