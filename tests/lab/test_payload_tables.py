"""``record_payloads``: every message split into its payloads, and pairs that hold
resources are closed when a run ends."""

from __future__ import annotations

import pandas as pd
import pytest

from pqike.lab import parse_spec, run_experiment
from pqike.lab.peers import MemoryPair
from pqike.lab.registry import default_pairs

SPEC = """
[experiment]
seed = 5
repetitions = 2
record_payloads = true

[proposals]
hybrid = "aes256gcm16-prfsha384-x25519-ke1_mlkem768"

[profiles.lossy]
delay_ms = 10
loss = 30
"""


def test_payload_recording_is_off_unless_the_spec_asks():
    assert not parse_spec(SPEC.replace("record_payloads = true\n", "")).record_payloads
    assert parse_spec(SPEC).record_payloads


def test_the_parts_of_every_message_add_up_to_its_size(tmp_path):
    result = run_experiment(parse_spec(SPEC), tmp_path, report=False)

    parts = pd.read_csv(tmp_path / "payloads.csv")
    messages = pd.read_csv(tmp_path / "messages.csv")
    assert len(parts) == len(result.payloads)
    sums = parts.groupby(["repetition", "message"])["bytes"].sum()
    sizes = messages.set_index(["repetition", "index"])["ike_bytes"]
    assert sums.to_dict() == sizes.to_dict()
    # 30 % loss: some IKE_INTERMEDIATE request is sent again, and dissected again.
    assert parts["retransmission"].any()
    ke = parts[(parts["exchange"] == "IKE_INTERMEDIATE") & (parts["payload"] == "KE")]
    assert set(ke["bytes"]) == {1192, 1096}  # ML-KEM-768 key and ciphertext + KE headers
    assert set(ke["protected"]) == {True}


def test_without_record_payloads_no_table_is_written(tmp_path):
    run_experiment(parse_spec(SPEC.replace("record_payloads = true\n", "")), tmp_path)

    assert not (tmp_path / "payloads.csv").exists()


class ClosingPair(MemoryPair):
    """A memory pair that counts handshakes and fails on the third."""

    def __init__(self) -> None:
        self.runs = 0
        self.closed = 0

    def run(self, case):
        self.runs += 1
        if self.runs == 3:
            raise RuntimeError("the lab broke")
        return super().run(case)

    def close(self) -> None:
        self.closed += 1


def test_a_pair_is_closed_when_the_run_ends_even_by_an_error():
    pair = ClosingPair()
    spec = parse_spec(SPEC.replace("repetitions = 2", "repetitions = 1"))

    run_experiment(spec, pairs={**default_pairs(), "memory": pair})
    assert pair.closed == 1

    with pytest.raises(RuntimeError, match="the lab broke"):
        run_experiment(spec.with_repetitions(4), pairs={**default_pairs(), "memory": pair})
    assert pair.closed == 2
