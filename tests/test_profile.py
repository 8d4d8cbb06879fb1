"""MTA profiles, the pure part (lab/core/profile.py): a good profile loads, every wrong one is
one ProfileError naming the file and the key; templates and log reading, line by line."""

from __future__ import annotations

from pathlib import Path

import pytest

from downgrade_lab.core.profile import Profile, context_facts, fill, find_key, first_result, load
from downgrade_lab.errors import ProfileError
from downgrade_lab.senders.registry import PROFILES
from tests.purity import imported_roots, loaded_by_importing

GOOD = """
name = "toy"
summary = "a toy MTA"
capabilities = ["queue-state"]
[vars]
bin = "{{real}}/toy/bin"
toyd = "{{bin}}/toyd"
[requires]
programs = ["{{toyd}}"]
[[files]]
path = "toy.conf"
text = "listen {{port}}\\nca {{ca_file}}\\n"
mode = "0600"
[prepare]
run = ["mkdir -p {{workdir}}/q", ["sh", "-c", "echo 'two words' > {{workdir}}/x"]]
[start]
run = "{{toyd}} -f {{workdir}}/toy.conf"
output = "toy.log"
ready_port = "{{port}}"
[submit]
via = "smtp"
port = "{{port}}"
queue_id = 'queued as (?P<id>\\w+)'
[outcome]
log = "toy.log"
delivered = '{{id}}: sent \\((?P<reason>.*)\\)'
deferred = ['{{id}}: deferred \\((?P<reason>.*)\\)', '{{id}}: try later']
bounced = '{{id}}: bounced'
ignore = '{{id}}: deferred \\(suspended'
[between]
run = "toyctl purge"
"""


def profile(text: str = GOOD) -> Profile:
    return load(text, "toy.toml")


def edit(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


def test_a_good_profile_loads() -> None:
    p = profile()
    assert (p.name, p.capabilities) == ("toy", frozenset({"queue-state"}))
    assert p.vars == (("bin", "{{real}}/toy/bin"), ("toyd", "{{bin}}/toyd"))
    assert p.files[0].mode == 0o600
    assert p.prepare.run == (("mkdir", "-p", "{{workdir}}/q"),
                             ("sh", "-c", "echo 'two words' > {{workdir}}/x"))
    assert p.start is not None and p.start.run == ("{{toyd}}", "-f", "{{workdir}}/toy.conf")
    assert p.submit.via == "smtp" and p.between.run == (("toyctl", "purge"),)
    assert [state for state, _ in p.outcome.patterns] == ["delivered", "deferred", "bounced"]


@pytest.mark.parametrize("old, new, key, words", [
    ('name = "toy"', 'name = "Toy MTA"', "name", "not a sender name"),
    ('name = "toy"\n', "", "name", "missing"),
    ('summary = "a toy MTA"', 'summary = ""', "summary", "must not be empty"),
    ('capabilities = ["queue-state"]', 'capabilities = ["clock"]', "capabilities", "needs a Python sender"),
    ('name = "toy"', 'colour = 1\nname = "toy"', "colour", "unknown key"),
    ('name = "toy"', "name = 5", "name", "must be a string"),
    ('bin = "{{real}}/toy/bin"', 'bin = "{{toyd}}/bin"', "vars.bin", "unknown placeholder {{toyd}}"),
    ('bin = "{{real}}/toy/bin"', 'port = "1"', "vars.port", "not one of the facts"),
    ('path = "toy.conf"', 'path = "../toy.conf"', "files[0].path", "inside workdir"),
    ('path = "toy.conf"', 'path = "/etc/toy.conf"', "files[0].path", "inside workdir"),
    ('mode = "0600"', "mode = 600", "files[0].mode", "octal string"),
    ('text = "listen {{port}}', 'text = "listen {{prot}}', "files[0].text", "unknown placeholder {{prot}}"),
    ('run = ["mkdir -p {{workdir}}/q"', 'run = ["mkdir -p \'{{workdir}}/q"', "prepare.run[0]", "cannot split"),
    ('run = ["mkdir -p {{workdir}}/q"', 'run = [""', "prepare.run[0]", "an empty command"),
    ('run = "{{toyd}} -f {{workdir}}/toy.conf"', 'daemon = true', "start.run", "missing"),
    ('ready_port = "{{port}}"\n', "daemon = true\n", "start", "needs ready_port or ready_log"),
    ('ready_port = "{{port}}"', "ready_port = 70000", "start.ready_port", "1-65535"),
    ('ready_port = "{{port}}"', "ready_log = 'up ('", "start.ready_log", "bad regular expression"),
    ('output = "toy.log"', 'output = "/var/log/toy.log"', "start.output", "inside workdir"),
    ('via = "smtp"', 'via = "lmtp"', "submit.via", "\"smtp\" or \"command\""),
    ('port = "{{port}}"\nqueue_id', 'queue_id', "submit.port", "missing"),
    ('port = "{{port}}"\nqueue_id', 'port = "{{port}}"\nuser = "u"\nqueue_id', "submit.password", "both user and password"),
    ('port = "{{port}}"\nqueue_id', 'port = "{{port}}"\ncommand = "x"\nqueue_id', "submit.command", "only with via = \"command\""),
    ('via = "smtp"\nport = "{{port}}"', 'via = "command"\nport = "{{port}}"', "submit.port", "only with via = \"smtp\""),
    ('via = "smtp"\nport = "{{port}}"', 'via = "command"', "submit.command", "missing"),
    ("queue_id = 'queued as (?P<id>\\w+)'", "queue_id = 'queued as (\\w+)'", "submit.queue_id", "(?P<id>"),
    ('log = "toy.log"\n', "", "outcome.log", "missing"),
    ("delivered = '{{id}}: sent \\((?P<reason>.*)\\)'\n", "", "outcome.delivered", "missing"),
    ("bounced = '{{id}}: bounced'", "bounced = []", "outcome.bounced", "non-empty list"),
    ("bounced = '{{id}}: bounced'", "bounced = '{{qid}}: bounced'", "outcome.bounced", "unknown placeholder {{qid}}"),
    ("deferred = ['{{id}}: deferred \\((?P<reason>.*)\\)', '{{id}}: try later']",
     "deferred = ['{{id}}: deferred', '{{id}}: try (later']", "outcome.deferred[1]", "bad regular expression"),
    ('log = "toy.log"', 'log = "toy.log"\nkey = "id=(\\\\w+)"', "outcome.key", "(?P<id>"),
    ('run = "toyctl purge"', 'run = 5', "between.run", "list of commands"),
    ("ignore = '{{id}}", "context = '{{session}} tls'\nignore = '{{id}}", "outcome.context", "unknown placeholder {{session}}"),
    ("[between]", "[between]\ntimeout_s = 0", "between.timeout_s", "number of seconds"),
])
def test_a_wrong_profile_names_file_and_key(old: str, new: str, key: str, words: str) -> None:
    with pytest.raises(ProfileError) as caught:
        profile(edit(old, new))
    assert caught.value.file == "toy.toml"
    assert caught.value.key == key, str(caught.value)
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"toy.toml: {key}: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("text, words", [
    ("name = ", "bad TOML"),
    ('name = "x"\nsummary = "y"', "submit: missing"),
    ("[[name]]", "summary: missing"),
])
def test_a_profile_that_is_not_one_says_so(text: str, words: str) -> None:
    with pytest.raises(ProfileError, match=words):
        load(text, "x.toml")


@pytest.mark.parametrize("template, values, regex, filled", [
    ("{{a}}/{{ b }}", {"a": "x", "b": "y"}, False, "x/y"),
    ("{{a}}", {"a": "a.b(c)"}, True, r"a\.b\(c\)"),
    ("{literal} ${exim} {{a}}", {"a": "1"}, False, "{literal} ${exim} 1"),  # other braces stay
])
def test_fill(template: str, values: dict[str, str], regex: bool, filled: str) -> None:
    assert fill(template, values, regex=regex) == filled


def test_fill_of_an_unknown_name_fails() -> None:
    with pytest.raises(KeyError):
        fill("{{nope}}", {})


LOG = [
    "Q1: queued",
    "Q2: deferred (suspended: earlier failures)",
    "Q1: deferred (suspended: earlier failures)",
    "Q1: sent (250 ok over TLS)",
    "Q1: bounced",
]


@pytest.mark.parametrize("lines, key, state, reason", [
    (LOG, "Q1", "delivered", "250 ok over TLS"),  # the stale deferral is ignored
    (["Q1: try later"], "Q1", "deferred", "Q1: try later"),  # no reason group: the line
    (["Q1: bounced", "Q1: sent (x)"], "Q1", "bounced", "Q1: bounced"),  # the first result wins
    (["Q10: sent (not ours)"], "Q1", None, None),
    (["Q1: queued"], "Q1", None, None),
    (["Qx: sent (x)"], "Q.", None, None),  # values are matched literally
])
def test_first_result(lines: list[str], key: str, state: str | None, reason: str | None) -> None:
    result = first_result(profile().outcome, lines, {"id": key})
    assert (result.state, result.reason) == (state, reason) if result else state is None


SESSION = edit("delivered = '{{id}}: sent", "delivered = '(?P<session>s\\d) {{id}}: sent") \
    .replace("ignore = '{{id}}", "context = '^{{session}} (?P<fact>TLS\\S*)'\nignore = '{{id}}")


@pytest.mark.parametrize("lines, facts", [
    (["s1 TLS1.3", "s2 TLS1.2", "s1 Q1: sent (ok)"], ["TLS1.3"]),  # the same session only
    (["s2 TLS1.2", "s1 Q1: sent (ok)"], []),  # no TLS in that session
])
def test_context_facts_of_the_result_session(lines: list[str], facts: list[str]) -> None:
    outcome = profile(SESSION).outcome
    result = first_result(outcome, lines, {"id": "Q1"})
    assert result is not None and dict(result.groups) == {"session": "s1"}
    assert context_facts(outcome, lines, {"id": "Q1", **dict(result.groups)}) == facts


@pytest.mark.parametrize("lines, key", [
    (["cleanup: 7F3A: message-id=<m1@sender.test>"], "7F3A"),
    (["cleanup: 7F3A: message-id=<m2@sender.test>"], None),
    (["cleanup: 7F3A: message-id=<m1@sender_test>"], None),  # the dot is not a wildcard
])
def test_find_key(lines: list[str], key: str | None) -> None:
    text = edit('log = "toy.log"', 'log = "toy.log"\nkey = \'(?P<id>\\w+): message-id=<{{message_id}}>\'')
    assert find_key(profile(text).outcome, lines, {"message_id": "m1@sender.test"}) == key


@pytest.mark.parametrize("file", sorted(PROFILES.glob("*.toml")), ids=lambda p: p.name)
def test_the_shipped_profiles_load(file: Path) -> None:
    assert load(file.read_text(), str(file)).name == file.stem


def test_profile_parsing_is_pure() -> None:
    assert not imported_roots("lab/core/profile.py") & {"asyncio", "socket", "ssl", "subprocess"}
    assert loaded_by_importing("downgrade_lab.core.profile",
                               among=frozenset({"asyncio", "ssl", "socket"})) == set()
