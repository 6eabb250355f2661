"""Export a causal-LM run's checkpoint as a Hugging Face folder (for evaluate.py, chat.py, merge.py):

python export.py checkpoint=RUN/checkpoints/last.ckpt        # RUN/exports/step-N/
python export.py run=RUN step=40 output=DIR                   # the checkpoint of step 40 (save_top_k=-1)
"""

from pathlib import Path

from chipadapt.cli import entry_point

main = entry_point(str(Path(__file__).resolve().parent / "conf"), "export", "chipadapt.checkpoint_export:run")

if __name__ == "__main__":
    main()
