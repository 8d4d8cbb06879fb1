"""Which senders may run here (lab/core/senderchoice.py): the one rule `run`, `demo` and the
pytest plugin share, one line per case, with made-up facts (no adapter is imported)."""

from __future__ import annotations

from typing import Literal

import pytest

from downgrade_lab.core.senderchoice import Refusal, SenderChoice, choose_senders
from downgrade_lab.senders.registry import SENDERS, choose
from tests.purity import imported_roots, loaded_by_importing

# reference and opportunistic built in; postfix real and installed; exim real, not installed
BUILTIN = {"reference": True, "opportunistic": True, "postfix": False, "exim": False}
MISSING = {"exim": "exim4 not found", "opportunistic": "broken"}
ISOLATE_MSG = "sender 'postfix' runs only with --isolate (a private network namespace with real ports and resolver)"
NO_ISOLATION_MSG = "'postfix' is a real MTA: it runs only in a private network namespace (`downgrade-lab run --isolate`)"
KNOWN = "known: reference, opportunistic, postfix, exim"


def available(name: str) -> tuple[bool, str]:
    return (name not in MISSING, MISSING.get(name, ""))


@pytest.mark.parametrize(("requested", "isolate", "unavailable", "result"), [
    pytest.param([], False, "refuse", SenderChoice(("reference",)), id="none asked: the available built-ins"),
    pytest.param([], True, "refuse", SenderChoice(("reference",)), id="none asked, isolated: still the built-ins"),
    pytest.param(["reference"], False, "refuse", SenderChoice(("reference",)), id="a built-in"),
    pytest.param(["reference", "reference"], None, "refuse", SenderChoice(("reference",)), id="asked twice: runs once"),
    pytest.param(["nosuch"], False, "refuse", Refusal("nosuch", "unknown", f"unknown sender 'nosuch' ({KNOWN})"), id="unknown"),
    pytest.param(["postfix"], True, "refuse", SenderChoice(("postfix",)), id="a real MTA with --isolate"),
    pytest.param(["postfix"], False, "refuse", Refusal("postfix", "needs-isolate", ISOLATE_MSG), id="a real MTA without --isolate"),
    pytest.param(["postfix"], None, "refuse", Refusal("postfix", "needs-isolate", NO_ISOLATION_MSG), id="a real MTA where no isolation exists"),
    pytest.param(["exim"], True, "refuse", Refusal("exim", "unavailable", "sender 'exim' cannot run here: exim4 not found"), id="not installed, isolated"),
    pytest.param(["exim"], False, "refuse", Refusal("exim", "needs-isolate", ISOLATE_MSG.replace("postfix", "exim")), id="not installed, not isolated: --isolate first"),
    pytest.param(["opportunistic"], None, "refuse", Refusal("opportunistic", "unavailable", "sender 'opportunistic' cannot run here: broken"), id="an unavailable built-in, refused"),
    pytest.param(["opportunistic", "reference"], None, "skip", SenderChoice(("opportunistic", "reference"), (("opportunistic", "broken"),)), id="an unavailable built-in, skipped"),
    pytest.param(["opportunistic", "nosuch"], None, "skip", Refusal("nosuch", "unknown", f"unknown sender 'nosuch' ({KNOWN})"), id="skipping never admits the unknown"),
    pytest.param(["reference", "nosuch", "postfix"], False, "refuse", Refusal("nosuch", "unknown", f"unknown sender 'nosuch' ({KNOWN})"), id="the first refusal in order"),
])
def test_choose_senders(requested: list[str], isolate: bool | None,
                        unavailable: Literal["refuse", "skip"], result: SenderChoice | Refusal) -> None:
    assert choose_senders(requested, BUILTIN, available, isolate=isolate, unavailable=unavailable) == result


def test_availability_is_asked_only_of_senders_that_would_run() -> None:
    asked: list[str] = []

    def probe(name: str) -> tuple[bool, str]:
        asked.append(name)
        return True, ""

    assert choose_senders(["postfix"], BUILTIN, probe, isolate=False) == Refusal("postfix", "needs-isolate", ISOLATE_MSG)
    assert asked == []
    assert choose_senders(["postfix"], BUILTIN, probe, isolate=True) == SenderChoice(("postfix",))
    assert asked == ["postfix"]


def test_the_registry_feeds_its_own_facts() -> None:
    assert choose([], isolate=False) == SenderChoice(("reference", "opportunistic"))
    refusal = choose(["nosuch"], isolate=False)
    assert isinstance(refusal, Refusal) and f"known: {', '.join(SENDERS)}" in refusal.message


def test_the_rule_is_pure() -> None:
    assert not imported_roots("lab/core/senderchoice.py") & {"asyncio", "socket", "ssl", "subprocess", "threading"}
    assert loaded_by_importing("downgrade_lab.core.senderchoice") == set()
