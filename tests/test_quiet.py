"""quiet.py: third-party loading chatter stays out of the run's log, even from a library imported later."""

import logging

from chipadapt.quiet import silence_known_noise


def test_bm25s_debug_lines_stay_out_even_when_it_resets_its_level_on_import(caplog):
    silence_known_noise()
    bm25s_log = logging.getLogger("bm25s")
    bm25s_log.setLevel(logging.DEBUG)  # what `import bm25s` does, often after the call above
    with caplog.at_level(logging.DEBUG):
        bm25s_log.debug("Building index from IDs objects")
        bm25s_log.warning("a real problem")
    assert [r.getMessage() for r in caplog.records if r.name == "bm25s"] == ["a real problem"]
