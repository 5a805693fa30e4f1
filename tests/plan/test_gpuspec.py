"""`--gpus SPEC`: descriptions of hosts and node pools, and the refusal a malformed one gets."""

from __future__ import annotations

import pytest
from conftest import Cli

from llmfleet.errors import FleetError
from llmfleet.plan.gpuspec import parse_spec


def host(text: str):
    spec = parse_spec(text)
    assert not spec.is_cluster
    return spec.pools[""]


def test_items_become_cards_numbered_in_the_order_written() -> None:
    gpus = host("1x24GiB,2x12GiB")
    assert [(g.index, g.memory_total_gib) for g in gpus] == [(0, 24.0), (1, 12.0), (2, 12.0)]
    assert all(g.uuid is None and g.memory_free_gib is None for g in gpus)  # a description cannot know these


@pytest.mark.parametrize("written", ["RTX3060", "rtx3060", "RTX-3060", "GeForce RTX 3060", "NVIDIA GeForce RTX 3060"])
def test_a_known_card_becomes_the_drivers_name_with_its_compute_capability(written: str) -> None:
    (gpu,) = host(f"1x12GiB:{written}")
    # The name NVML reports on the seeds' host, so a described plan reads like one made on that host.
    assert (gpu.name, gpu.compute_capability) == ("NVIDIA GeForce RTX 3060", 8.6)


def test_an_unknown_card_name_is_kept_as_written_and_its_capability_unknown() -> None:
    (gpu,) = host("1x32GiB:MyCard 9000")
    assert (gpu.name, gpu.compute_capability) == ("MyCard 9000", None)


def test_a_card_without_a_name_is_named_by_its_size() -> None:
    assert host("1x24GiB")[0].name == "24 GiB GPU"


@pytest.mark.parametrize("memory", ["12GiB", "12gib", "12GB", "12G", "12288MiB", "12288MB", " 12 GiB"])
def test_gb_and_mib_are_read_as_the_cards_gib(memory: str) -> None:
    assert host(f"2x{memory}")[0].memory_total_gib == 12.0


def test_none_describes_a_host_without_gpus() -> None:
    assert host("none") == ()


def test_node_pools_are_parsed_by_name() -> None:
    spec = parse_spec("pool-a=2x12GiB:RTX3060;pool-b=4x48GiB:RTX6000Ada")
    assert spec.is_cluster
    assert {name: [(g.index, g.name) for g in gpus] for name, gpus in spec.pools.items()} == {
        "pool-a": [(0, "NVIDIA GeForce RTX 3060"), (1, "NVIDIA GeForce RTX 3060")],
        "pool-b": [(i, "NVIDIA RTX 6000 Ada Generation") for i in range(4)],
    }


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", "empty"),
        ("2x12", "'2x12' is not COUNTxMEMORY"),
        ("12GiB", "'12GiB' is not COUNTxMEMORY"),
        ("2x12TiB", "not COUNTxMEMORY"),
        ("2x12GiB,", "'' is not COUNTxMEMORY"),
        ("0x12GiB", "asks for 0 cards"),
        ("2x0GiB", "gives each card 0 GiB"),
        ("2x4096GiB", "gives each card 4096 GiB"),
        ("pool-a=2x12GiB;Pool B=1x12GiB", "lower-case pool NAME"),
        ("a=1x12GiB;a=1x24GiB", "pool 'a' appears twice"),
    ],
)
def test_a_malformed_spec_is_refused_with_the_accepted_form(spec: str, problem: str) -> None:
    with pytest.raises(FleetError) as caught:
        parse_spec(spec)
    e = caught.value
    assert problem in e.what and e.where == "--gpus"
    assert "COUNTxMEMORY" in e.fix and "2x12GiB:RTX3060" in e.fix and "pool-a=" in e.fix


def test_the_cli_refuses_a_malformed_spec_in_one_clean_error(cli: Cli) -> None:
    result = cli("plan", "--gpus", "2x12", "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "'2x12' is not COUNTxMEMORY" in result.stderr and "e.g. 2x12GiB" in result.stderr
    assert result.stdout == ""
