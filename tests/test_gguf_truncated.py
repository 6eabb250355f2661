"""A truncated .gguf file is one `chipadapt: error:` naming the key and the file, not transformers'
struct.error from its header reader."""

import pytest

from chipadapt.errors import ChipadaptError
from chipadapt.models.gguf_import import convert_gguf


@pytest.mark.parametrize("content", [b"GGUF", b"GGUF\x03\x00\x00\x00\x01"])
def test_a_truncated_gguf_is_refused_naming_the_file(tmp_path, content):
    (tmp_path / "model.gguf").write_bytes(content)
    with pytest.raises(ChipadaptError, match=r"^models\.chip: .*model\.gguf could not be read as a GGUF causal LM"):
        convert_gguf(tmp_path, "model.gguf", tmp_path / "out", "models.chip")
    assert not (tmp_path / "out").exists()
