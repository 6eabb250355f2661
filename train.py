"""Train one stage (chosen by `stage=`) from the Hydra config tree in conf/.

python train.py experiment=quickstart
python train.py -m model=tiny optim.lr=1e-4,5e-6 data.seq_len=64,128
"""

from pathlib import Path

from chipadapt.cli import entry_point

main = entry_point(str(Path(__file__).resolve().parent / "conf"), "train", "chipadapt.pipeline:train")

if __name__ == "__main__":
    main()
