"""Query parameters: an endpoint reads the parameters it declares, each once; anything else is refused (400), as
unknown multipart fields are. A client that sends ``anonymize=eye-mosaic`` (the CLI's spelling) and gets back a
clean estimate would believe the face was anonymised; one that sends ``threshold`` twice would not know which
counted.
"""

from __future__ import annotations

import difflib
from typing import Iterable, Sequence

from agescan.service.http import ServiceError

#: Names clients use for a parameter this API spells otherwise (the CLI's ``--transform``, ``anonymize --method``,
#: American spelling).
ALIASES = {"anonymize": "anonymise", "transform": "anonymise", "method": "anonymise", "privacy_op": "anonymise"}


def check_query(items: Iterable[tuple[str, str]], accepted: Sequence[str], where: str) -> None:
    """Refuse (400) a query parameter ``where`` (an endpoint) does not accept, naming it and listing ``accepted``
    with the likely intended one, and a parameter given more than once."""
    seen: set[str] = set()
    for name, _ in items:
        if name not in accepted:
            hint = ALIASES.get(name.lower()) if ALIASES.get(name.lower()) in accepted else None
            hint = hint or next(iter(difflib.get_close_matches(name.lower(), accepted, n=1, cutoff=0.75)), None)
            raise ServiceError(400, "unknown_parameter",
                               f"Unknown query parameter {name[:40]!r}{f' (did you mean {hint!r}?)' if hint else ''}"
                               f": {where} accepts {', '.join(accepted)}.")
        if name in seen:
            raise ServiceError(400, "repeated_parameter", f"The query parameter {name!r} is given more than once: "
                                                          "give it once.")
        seen.add(name)
