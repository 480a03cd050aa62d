"""The check recorder the *_check.py scripts share: each check prints one line ("ok    ..." or
"FAIL  ..."), and the script ends with a summary and exit status 1 if any check failed."""

FAILURES = []


def check(condition, what):
    """Record and print one check."""
    print(("ok    " if condition else "FAIL  ") + what, flush=True)
    if not condition:
        FAILURES.append(what)


def exit_status():
    """Prints the summary line; the exit status: 1 if any check failed, else 0."""
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed", flush=True)
        return 1
    print("all checks passed", flush=True)
    return 0
