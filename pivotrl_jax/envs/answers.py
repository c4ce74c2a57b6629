"""Whether a final message states the task's answer.

>>> answer_in("7", "There are 7 lines."), answer_in("7", "17 lines")
(True, False)
>>> answer_in("plan.txt", "It is docs/plan.txt.")
True
"""

from __future__ import annotations

import re


def answer_in(answer: str, message: str) -> bool:
    """`answer` appears in `message` as a whole token (so "7" is not found in "17")."""
    return re.search(rf"(?<![\w]){re.escape(answer)}(?!\w)", message, re.IGNORECASE) is not None
