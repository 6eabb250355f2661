"""A changed setting is named with both values, a long one cut to a part and its length: a rerun of an
exported mergekit_config.yml into the same folder named the whole chat template (several KB on one line)
in its "merged with other settings" refusal. The part shown starts near where the two values differ, so
two long values that share their start still read as different."""

from chipadapt.run_settings import describe

TEMPLATE = "INSTRUCT {% for m in messages %}" + "{{ m.content }}" * 200


def test_a_long_value_is_shown_by_its_start_and_length():
    (said,) = describe(["merge.chat_template"], {"merge.chat_template": None}, {"merge.chat_template": TEMPLATE})
    assert said.startswith("merge.chat_template: None -> 'INSTRUCT {% for m in messages %}")
    assert said.endswith(f"... ({len(TEMPLATE)} chars)") and len(said) < 150


def test_two_long_values_are_shown_where_they_differ():
    old, new = "/runs/" + "d" * 150 + "/one", "/runs/" + "d" * 150 + "/two"
    (said,) = describe(["data.path"], {"data.path": old}, {"data.path": new})
    assert "/one' (160 chars) -> ..." in said and said.endswith("/two' (160 chars)")


def test_short_values_and_values_copied_under_several_keys_are_shown_whole():
    said = describe(["optim.lr", "a", "b"], {"optim.lr": 5e-05, "a": [1] * 40}, {"optim.lr": 1e-4, "b": None})
    assert said[0] == "optim.lr: 5e-05 -> 0.0001"
    assert said[1].startswith("a: [1, 1, 1") and said[1].endswith("... (120 chars) -> None")
    assert describe(["x", "y"], {}, {"x": TEMPLATE, "y": TEMPLATE})[0].startswith("x, y: None -> 'INSTRUCT")
