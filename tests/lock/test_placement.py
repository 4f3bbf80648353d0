"""Placement in an Incus cluster (anklume/lock/placement.py): each rule of its docstring, with
the facts of a real 3-member cluster (tests/fixtures/cluster) and, where GPUs matter, the
recorded H200 host's inventory served per member (tests/support/cluster_recorded.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from anklume.errors import ResolveError
from anklume.lock.assemble import Update
from anklume.lock.placement import ClusterFacts, MemberFacts, kept_machines, place
from anklume.model.load import load_infra
from tests.support.cluster_recorded import h200_cards, recorded_facts

GIB = 2**30


def infra_of(machines: str, *, extra: str = "", glob: str = "{}", domain: str = "") -> object:
    text = f"project_name: p\nglobal: {glob}\ndomains:\n  pro:\n    subnet_id: 1\n{domain}    machines:\n{machines}{extra}"
    return load_infra(text.encode())


def lines(**machines: str) -> str:
    return "".join(f"      {name}: {body}\n" for name, body in machines.items())


def inventory_on(*members: str):
    """The recorded H200 inventory on ``members``, no GPU on the others."""
    return lambda member: h200_cards() if member in members else []


def placed(infra, facts=None, old=None, old_gpus=None, update=Update(), inventory=inventory_on(), models=None):
    facts = recorded_facts() if facts is None else facts
    return place(infra, old, old_gpus or {}, facts, update, inventory, models or {})


def members_of(result) -> dict[str, str]:
    return {m: p.locked.member for m, p in result.cluster.placement.items()}


# -- explicit ------------------------------------------------------------------------------------


def test_a_machine_target_wins_over_its_domain_target():
    infra = infra_of(lines(web="{target: m3}", db="{}"), domain="    target: m2\n")
    result = placed(infra)
    assert members_of(result) == {"db": "m2", "web": "m3"}
    assert result.cluster.placement["web"].locked.reason == "target of machine web"
    assert result.cluster.placement["db"].locked.reason == "target of domain pro"
    assert result.cluster.placement["web"].original.target == "m3"


def test_an_unknown_member_names_the_key_path_and_the_members():
    infra = infra_of(lines(web="{target: m9}"))
    with pytest.raises(ResolveError) as err:
        placed(infra)
    assert err.value.message == ("infra.yml: domains.pro.machines.web.target: 'm9' is not a member of the cluster "
                                 "(its members: m1, m2, m3)")


def test_a_member_of_another_architecture_is_refused():
    infra = infra_of(lines(web="{target: m2}"), glob="{architecture: aarch64}")
    with pytest.raises(ResolveError, match=r"domains.pro.machines.web.target: member 'm2' is x86_64 but "
                                           r"global.architecture is aarch64"):
        placed(infra)


def test_a_member_that_is_down_may_be_named():
    result = placed(infra_of(lines(web="{target: m3}")), facts=recorded_facts(offline=["m3"]))
    assert members_of(result) == {"web": "m3"}
    assert result.cluster.members["m3"].cpu_threads is None  # recorded: architecture only


# -- spread --------------------------------------------------------------------------------------


def test_spread_fills_the_least_loaded_member_ties_by_name():
    """The recorded members: 2 threads and 24 GiB each; one thread per machine by default."""
    result = placed(infra_of(lines(a="{}", b="{}", c="{}", d="{}")))
    assert members_of(result) == {"a": "m1", "b": "m2", "c": "m3", "d": "m1"}
    assert result.cluster.placement["a"].locked.reason == "spread: least loaded (1 of 2 threads, 0.0 of 24.0 GiB declared)"
    assert result.cluster.placement["d"].locked.reason == "spread: least loaded (2 of 2 threads, 0.0 of 24.0 GiB declared)"


def test_declared_limits_are_the_demand():
    infra = infra_of(lines(big='{config: {limits.cpu: "0-1", limits.memory: 12GiB}}', b="{}",
                           c='{config: {limits.memory: "50%"}}'))
    result = placed(infra)
    # by name: b -> m1 (a tie); big (2 threads, 12 GiB): m1 would be max(3/2, 1/2), m2 max(2/2, 1/2) -> m2;
    # c (12 GiB: 50% of 24): m1 max(2/2, 1/2), m2 max(3/2, 24/24), m3 max(1/2, 1/2) -> m3
    assert members_of(result) == {"b": "m1", "big": "m2", "c": "m3"}
    assert result.cluster.placement["big"].locked.reason == "spread: least loaded (2 of 2 threads, 12.0 of 24.0 GiB declared)"
    assert result.cluster.placement["c"].locked.reason == "spread: least loaded (1 of 2 threads, 12.0 of 24.0 GiB declared)"


def test_limits_from_profiles_count_as_incus_expands_them():
    infra = infra_of(lines(a="{profiles: [fat]}", b="{profiles: [fat], config: {limits.memory: 1GiB}}"),
                     domain="    profiles:\n      fat: {config: {limits.memory: 20GiB}}\n")
    result = placed(infra)
    # a: 20 GiB on m1; b: its own 1 GiB wins over the profile's: m2 (m1 would be 21/24)
    assert members_of(result) == {"a": "m1", "b": "m2"}
    assert "1.0 of 24.0 GiB" in result.cluster.placement["b"].locked.reason


def test_no_room_says_the_demand_and_each_members_room():
    infra = infra_of(lines(a="{config: {limits.memory: 20GiB}}", b="{config: {limits.memory: 20GiB}}",
                           c="{config: {limits.memory: 20GiB}}", d="{config: {limits.memory: 5GiB}}"))
    with pytest.raises(ResolveError) as err:
        placed(infra)
    assert err.value.message == ("infra.yml: machine 'd': no cluster member has room for the memory declared "
                                 "(d: 5.0 GiB): m1: 4.0 of 24.0 GiB free; m2: 4.0 of 24.0 GiB free; "
                                 "m3: 4.0 of 24.0 GiB free")


def test_no_member_online():
    facts = recorded_facts(offline=["m1", "m2", "m3"])
    with pytest.raises(ResolveError) as err:
        placed(infra_of(lines(a="{}")), facts=facts)
    assert "no member of architecture x86_64 is online (m1: Offline; m2: Offline; m3: Offline)" in err.value.message


def test_offline_members_take_no_spread_machine():
    result = placed(infra_of(lines(a="{}", b="{}", c="{}")), facts=recorded_facts(offline=["m2"]))
    assert members_of(result) == {"a": "m1", "b": "m3", "c": "m1"}


@pytest.mark.parametrize(("key", "value", "words"), [
    ("limits.cpu", '"many"', "neither a number of CPUs"),
    ("limits.cpu", '"3-1"', "is not low-high"),
    ("limits.memory", '"2 GiB"', "neither a size"),
    ("limits.memory", '"2gib"', "neither a size"),
    ("limits.memory", '"150%"', "1% to 100%"),
])
def test_a_limit_incus_would_refuse_is_an_error_at_its_key_path(key, value, words):
    infra = infra_of(lines(a=f"{{config: {{{key}: {value}}}}}"))
    with pytest.raises(ResolveError) as err:
        placed(infra)
    assert err.value.message.startswith(f"infra.yml: domains.pro.machines.a.config.{key}: ")
    assert words in err.value.message


# -- kept ------------------------------------------------------------------------------------------


def test_a_new_machine_moves_no_other_and_the_old_reasons_stay():
    old = placed(infra_of(lines(a="{}", b="{}", c="{}")))
    facts = recorded_facts(gpu_members=["m3"])  # facts changed since: m3 now 16 threads
    new = placed(infra_of(lines(a="{}", b="{}", c="{}", aa="{}")), facts=facts, old=old.cluster)
    for name in "abc":
        assert new.cluster.placement[name] == old.cluster.placement[name]
    assert new.cluster.placement["aa"].locked.member == "m3"
    assert new.cluster.members["m3"].cpu_threads == 16  # the facts recorded are the fresh ones


def test_update_names_re_place_only_them():
    old = placed(infra_of(lines(a="{}", b="{}", c="{}")))
    facts = recorded_facts(gpu_members=["m3"])
    new = placed(infra_of(lines(a="{}", b="{}", c="{}")), facts=facts, old=old.cluster,
                 update=Update(names=frozenset({"a"})))
    assert members_of(new) == {"a": "m3", "b": "m2", "c": "m3"}
    assert new.cluster.placement["b"] == old.cluster.placement["b"]


def test_a_changed_target_or_a_member_gone_re_places():
    old = placed(infra_of(lines(a="{target: m1}", b="{}", c="{}")))
    assert members_of(old) == {"a": "m1", "b": "m2", "c": "m3"}
    new = placed(infra_of(lines(a="{target: m2}", b="{}", c="{}")), old=old.cluster)
    assert members_of(new) == {"a": "m2", "b": "m2", "c": "m3"}
    two = ClusterFacts(server_name="m1", members={k: v for k, v in recorded_facts().members.items() if k != "m3"})
    new = placed(infra_of(lines(a="{target: m1}", b="{}", c="{}")), facts=two, old=old.cluster)
    assert members_of(new) == {"a": "m1", "b": "m2", "c": "m1"}
    assert "m3" not in new.cluster.members


def test_without_facts_everything_kept_is_kept_byte_for_byte():
    old = placed(infra_of(lines(a="{}", b="{}")))
    again = place(infra_of(lines(a="{}")), old.cluster, {}, None, Update(), inventory_on(), {})
    assert again.cluster.members == old.cluster.members
    assert again.cluster.placement == {"a": old.cluster.placement["a"]}
    assert kept_machines(infra_of(lines(a="{}", n="{}")), old.cluster, {}, Update()) == {"a"}


# -- shared volumes --------------------------------------------------------------------------------

VOL = "{storage_volumes: {data: {path: /srv}}}"


def test_machines_sharing_a_volume_share_a_member():
    infra = infra_of(lines(a=VOL, b="{}", c="{storage_volumes: {data: {path: /data}, other: {path: /o}}}",
                           d="{storage_volumes: {other: {path: /o}}}"))
    result = placed(infra)
    assert members_of(result) == {"a": "m1", "b": "m2", "c": "m1", "d": "m1"}
    assert result.cluster.placement["c"].locked.reason == "shares volume data with a"
    assert result.cluster.placement["d"].locked.reason == "shares volume other with c"


def test_a_target_in_a_volume_group_leads_it():
    result = placed(infra_of(lines(a=VOL, b="{storage_volumes: {data: {path: /d}}, target: m3}")))
    assert members_of(result) == {"a": "m3", "b": "m3"}
    assert result.cluster.placement["a"].locked.reason == "shares volume data with b"


def test_targets_that_disagree_in_a_volume_group_are_an_error_naming_both():
    infra = infra_of(lines(a="{storage_volumes: {data: {path: /d}}, target: m1}",
                           b="{storage_volumes: {data: {path: /d}}, target: m2}"))
    with pytest.raises(ResolveError) as err:
        placed(infra)
    assert err.value.message == ("infra.yml: machines a and b share volume data and must run on one member, but "
                                 "domains.pro.machines.a.target names 'm1' and domains.pro.machines.b.target names 'm2'")


def test_a_new_target_never_moves_a_kept_machine_of_its_volume_group():
    old = placed(infra_of(lines(a=VOL)))
    assert members_of(old) == {"a": "m1"}
    infra = infra_of(lines(a=VOL, b="{storage_volumes: {data: {path: /d}}, target: m2}"))
    with pytest.raises(ResolveError, match="the lock places it on 'm1'") as err:
        placed(infra, old=old.cluster)
    assert "anklume lock --update" in err.value.hint
    result = placed(infra, old=old.cluster, update=Update(names=frozenset({"a"})))
    assert members_of(result) == {"a": "m2", "b": "m2"}


def test_volumes_of_another_domain_are_other_volumes():
    text = ("project_name: p\nglobal: {}\ndomains:\n  one:\n    subnet_id: 1\n    machines:\n      a: " + VOL +
            "\n  two:\n    subnet_id: 2\n    machines:\n      b: " + VOL + "\n")
    assert members_of(placed(load_infra(text.encode()))) == {"a": "m1", "b": "m2"}


# -- GPU machines ----------------------------------------------------------------------------------


def test_gpu_machines_go_where_a_free_card_is():
    facts = recorded_facts(gpu_members=["m2", "m3"])
    result = placed(infra_of(lines(llm="{gpu: true}", other="{gpu: true}", plain="{}")), facts=facts,
                    inventory=inventory_on("m2", "m3"))
    # plain: m1 would be at 1 of 2 threads, m2 (the H200 host's facts) at 2 of 16
    assert members_of(result) == {"llm": "m2", "other": "m3", "plain": "m2"}
    assert result.cluster.placement["llm"].locked.reason == "GPU 0000:00:06.0 (NVIDIA H200) free on m2"
    pin = result.gpus["llm"]
    assert pin.member == "m2" and pin.locked.uuid == "GPU-9e1c631b-fafe-f96d-935d-1ff4b8a5bf54"
    assert pin.locked.vram_mib == 143771


def test_exclusive_with_too_few_cards_says_what_each_member_has():
    facts = recorded_facts(gpu_members=["m2"])
    with pytest.raises(ResolveError) as err:
        placed(infra_of(lines(a="{gpu: true}", b="{gpu: true}")), facts=facts, inventory=inventory_on("m2"))
    assert err.value.message == ("infra.yml: machine 'b' asks for a GPU (exclusive) but no member has a free GPU "
                                 "that fits: m1: no GPU; m2: 0000:00:06.0 NVIDIA H200 (140.4 GiB of VRAM, held by a); "
                                 "m3: no GPU")


def test_shared_takes_the_least_shared_card_ties_by_member_then_address():
    facts = recorded_facts(gpu_members=["m2", "m3"])
    result = placed(infra_of(lines(a="{gpu: true}", b="{gpu: true}", c="{gpu: true}"), glob="{gpu_policy: shared}"),
                    facts=facts, inventory=inventory_on("m2", "m3"))
    assert members_of(result) == {"a": "m2", "b": "m3", "c": "m2"}
    assert result.cluster.placement["c"].locked.reason == ("GPU 0000:00:06.0 (NVIDIA H200) on m2, the least shared "
                                                           "(1 other machine)")


def test_a_gpu_machine_with_a_target_gets_a_card_of_that_member():
    facts = recorded_facts(gpu_members=["m2", "m3"])
    result = placed(infra_of(lines(a="{gpu: true}", b="{gpu: true, target: m2}")), facts=facts,
                    inventory=inventory_on("m2", "m3"))
    assert members_of(result) == {"a": "m3", "b": "m2"}  # b's target comes first
    assert result.gpus["b"].member == "m2" and result.cluster.placement["b"].locked.reason == "target of machine b"
    with pytest.raises(ResolveError, match="but member m1 has a free GPU that fits: m1: no GPU"):
        placed(infra_of(lines(a="{gpu: true, target: m1}")), facts=facts, inventory=inventory_on("m2", "m3"))


def test_vram_too_small_for_the_models_skips_the_card():
    big = SimpleNamespace(locked=SimpleNamespace(vram_bytes=200 * GIB))  # all placement reads of a model pin
    facts = recorded_facts(gpu_members=["m2"])
    with pytest.raises(ResolveError, match=r"its models need 200.0 GiB of VRAM\) but no member"):
        placed(infra_of(lines(llm='{gpu: true, models: ["big:1"]}')), facts=facts, inventory=inventory_on("m2"),
               models={"big:1": big})


def test_a_vm_gets_the_card_only():
    facts = recorded_facts(gpu_members=["m2"])
    result = placed(infra_of(lines(vm1="{gpu: true, type: vm}")), facts=facts, inventory=inventory_on("m2"))
    assert result.gpus["vm1"].driver is None and result.gpus["vm1"].member == "m2"


def test_a_kept_gpu_machine_keeps_its_card_and_the_inventory_is_not_read():
    facts = recorded_facts(gpu_members=["m2", "m3"])
    old = placed(infra_of(lines(a="{gpu: true}")), facts=facts, inventory=inventory_on("m2", "m3"))
    asked = []

    def inventory(member):
        asked.append(member)
        return inventory_on("m2", "m3")(member)

    new = placed(infra_of(lines(a="{gpu: true}", z="{}")), facts=facts, old=old.cluster, old_gpus=old.gpus,
                 inventory=inventory)
    assert new.gpus == old.gpus and new.cluster.placement["a"] == old.cluster.placement["a"] and asked == []
    # a policy change re-places it (its pin is not kept)
    new = placed(infra_of(lines(a="{gpu: true}"), glob="{gpu_policy: shared}"), facts=facts, old=old.cluster,
                 old_gpus=old.gpus, inventory=inventory)
    assert new.gpus["a"].original.policy == "shared" and asked == ["m1", "m2", "m3"]


def test_a_gpu_machine_follows_its_volume_group():
    facts = recorded_facts(gpu_members=["m2", "m3"])
    infra = infra_of(lines(a="{storage_volumes: {models: {path: /m}}, target: m3}",
                           llm="{gpu: true, storage_volumes: {models: {path: /m}}}"))
    result = placed(infra, facts=facts, inventory=inventory_on("m2", "m3"))
    assert members_of(result) == {"a": "m3", "llm": "m3"} and result.gpus["llm"].member == "m3"
    assert result.cluster.placement["llm"].locked.reason == "shares volume models with a"


def test_members_and_cards_in_any_order_give_the_same_placement():
    facts = recorded_facts(gpu_members=["m2", "m3"])
    reversed_facts = ClusterFacts(server_name="m1", members=dict(reversed(list(facts.members.items()))))
    infra = infra_of(lines(a="{gpu: true}", b="{}", c="{}", d="{}"))
    one = placed(infra, facts=facts, inventory=inventory_on("m2", "m3"))
    two = placed(infra, facts=reversed_facts, inventory=lambda m: list(reversed(inventory_on("m2", "m3")(m))))
    assert one == two


def test_an_unknown_status_member_is_recorded_without_facts():
    facts = ClusterFacts(server_name="m1", members={
        "m1": MemberFacts(architecture="x86_64", cpu_threads=4, memory_bytes=8 * GIB),
        "m2": MemberFacts(architecture="x86_64", status="Evacuated", cpu_threads=4, memory_bytes=8 * GIB)})
    result = placed(infra_of(lines(a="{}", b="{}")), facts=facts)
    assert members_of(result) == {"a": "m1", "b": "m1"}
    assert result.cluster.members["m2"].cpu_threads is None


def test_no_gpu_candidate_says_why_each_member_is_none():
    facts = recorded_facts(offline=["m1", "m2"])
    with pytest.raises(ResolveError) as err:
        placed(infra_of(lines(a="{gpu: true}"), glob="{architecture: aarch64}"), facts=facts,
               inventory=inventory_on("m3"))
    assert err.value.message.endswith("no member has a free GPU that fits: m1: Offline; m2: Offline; m3: x86_64")
