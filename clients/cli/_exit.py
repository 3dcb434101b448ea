"""The CLI's exit codes: 0 ok / the task succeeded, 1 the task failed, 2 bad input (a declined
confirmation too), 3 the task was cancelled, 4 the mesh is unavailable."""

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_CANCELLED, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
