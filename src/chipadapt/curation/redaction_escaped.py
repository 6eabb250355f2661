"""How JSON escaped in a JSON string reads, at any depth (kubectl's last-applied-configuration in an annotation,
escaped again in a string of that JSON): its quote, a value to the quote that closes it, a list's item.
Pattern fragments that redaction_forms builds its escaped forms from, and the pattern that reads one item of an
escaped list (redaction_yaml). Every fragment reads a run of backslashes once: linear time.
"""

import re

# In JSON escaped d times in a string a quote is 2^d - 1 backslashes and `"` (`eq`, its run `eb`); a backslash
# of a string's text is 2^(d+1) of them (_ESCAPED_BACKSLASH), and a quote of its text (`\\\"` at depth 1) any
# number of those and 2^(d+1) - 1 before its `"`. A value runs to its quote, the first `"` after a run that is
# some backslashes of its text and `eb`: the quotes of its text, the backslashes before its closing quote (a
# value that ends in one) are its own. Read once (possessive): a run is matched against `eb` and its double,
# never against every shorter run (a backreference tried at each of a run's backslashes: quadratic time).
ESCAPED_QUOTE = r"(?P<eq>(?P<eb>\\(?<!\\\\)\\*+)\")"
_ESCAPED_BACKSLASH = r"(?:(?P=eb)(?P=eb)\\\\)"
ESCAPED_VALUE = (
    r"(?:[^\"\\\n]|\\++[^\"\\\n]|" + _ESCAPED_BACKSLASH + r"*+(?P=eb)(?P=eb)\\\")++" + _ESCAPED_BACKSLASH + "*+"
)
# An item of an escaped list (redaction_forms.ESCAPED_LIST), quoted by its name's quote; blanks between items
# may be escaped line ends (`\n` at depth 1). A number, null, true or false among them is read past
# (`[\"S3cret99\", 5]`): the strings are still judged.
_ESCAPED_BLANK = r"(?:[ \t]|\\++[nrt])*+"
_JSON_SCALAR = r"(?:-?\d[\w.+\-]*+|null|true|false)"
ESCAPED_LIST_ITEM = _ESCAPED_BLANK + r"(?:(?P=eq)" + ESCAPED_VALUE + r"(?P=eq)|" + _JSON_SCALAR + r")" + _ESCAPED_BLANK
# One of its items, its closing quote read with it: the next item's search begins after it.
ESCAPED_ITEM = re.compile(ESCAPED_QUOTE + r"(?P<ev>" + ESCAPED_VALUE + r")(?P=eq)")
