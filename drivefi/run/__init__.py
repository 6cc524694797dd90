"""Running a scenario on a testbed: the closed loop, golden and faulty runs, the trace format."""
