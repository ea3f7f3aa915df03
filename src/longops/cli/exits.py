"""The exit codes of the `longops` command, and the words `--help` says them in."""

OK, FAILED, USAGE, TIMED_OUT, UNREACHABLE = 0, 1, 2, 3, 4
"""The exit codes, as EXIT_CODES tells users."""
EXIT_CODES = (
    "Exit codes: 0 done;"
    " 1 the server refused the request, the operation failed, or serve/worker could not start"
    " (database, port in use, a bad LONGOPS_* setting);"
    " 2 a usage mistake (an option, argument or JSON request that is not valid);"
    " 3 `ops wait --timeout` ran out before the operation was done;"
    " 4 no server answered at --base-url / LONGOPS_BASE_URL (not running, wrong host, or"
    " no answer within LONGOPS_HTTP_TIMEOUT seconds)."
)
