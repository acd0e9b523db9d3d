"""The sweep: plan points, launch fresh rank processes, run one rank, write result rows."""
