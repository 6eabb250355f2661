"""Chat with a model folder in the terminal (streaming; optional retrieval and SteerLM attributes):

python chat.py model.path=RUN/model
python chat.py model.path=STEERLM_RUN/model generate.attributes=quality:4,humor:0 data/template=chipnemo
python chat.py model.path=RUN/model retrieval=openroad +retrieval.encoders.minilm.path=RETRIEVER_RUN/model
"""

from pathlib import Path

from chipadapt.cli import entry_point

main = entry_point(str(Path(__file__).resolve().parent / "conf"), "chat", "chipadapt.chat:run")

if __name__ == "__main__":
    main()
