"""`python -m chipadapt.data.curate` with units of work that wait (the curation interrupt test only).

With CHIPADAPT_TEST_MARKS set, a worker marks each file it curated in that folder: the file named
`slow.jsonl` then holds its worker until the test's signal, and any other waits for that mark first,
so the two are curated by two workers. The signal so comes while one worker curates and the other
waits for work (where a Pool worker held its task queue's lock: killed, it wedged the main process).
Patched at import: the spawned workers, which import this script as their `__main__`, patch too."""

import functools
import os
import time

from chipadapt.curation import process

MARKS = os.environ.get("CHIPADAPT_TEST_MARKS")
SLOW = "slow.jsonl"

if MARKS:
    original = process.process_unit

    @functools.wraps(original)
    def process_unit(unit, s):
        results = original(unit, s)
        name = os.path.basename(unit.files[0])
        if name == SLOW:
            open(os.path.join(MARKS, name), "w").close()
            time.sleep(120)
        else:
            while not os.path.exists(os.path.join(MARKS, SLOW)):  # the other worker has the slow one
                time.sleep(0.01)
            open(os.path.join(MARKS, name), "w").close()
        return results

    process.process_unit = process_unit

if __name__ == "__main__":
    from chipadapt.data.curate import main

    main()
