"""models/loading.py _publish_model: the model cache is written beside its final name and moved
into place in one step; a folder another process already published is kept, never replaced."""

from rlhfkit.models.loading import _publish_model


class Saver:
    def __init__(self, text):
        self.text = text

    def save_pretrained(self, folder):
        (folder / "config.json").write_text(self.text)


def test_publish_then_keep_the_first_writer(tmp_path):
    final = tmp_path / "models" / "tiny-random"
    assert _publish_model(Saver("first"), Saver("tok"), final) == final
    assert (final / "config.json").read_text() == "tok"  # the tokenizer saved last, same folder
    _publish_model(Saver("second"), Saver("second"), final)  # lost the race: the first stays
    assert (final / "config.json").read_text() == "tok"
    assert sorted(p.name for p in final.parent.iterdir()) == ["tiny-random"]  # no temporary left
