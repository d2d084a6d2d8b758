"""What a run leaves behind for people and CI: the run directory (:mod:`~harness.report.rundir`),
JUnit XML, the terminal summary (:mod:`~harness.report.terminal`) and the HTML pages
(:mod:`~harness.report.html`)."""
