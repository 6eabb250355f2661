"""`python -m chipadapt.data.curate [data/curate=NAME] [overrides]`: curate a folder of files into
corpus JSONL shards (see chipadapt.curation.run). Configs live in conf/data/curate/."""

from pathlib import Path

from chipadapt.cli import entry_point

CONF = str(Path(__file__).resolve().parents[3] / "conf")

main = entry_point(CONF, "curate", "chipadapt.curation.run:curate_job")

if __name__ == "__main__":
    main()
