"""`benchmarks/profile_step.py`: the attribution of trace events to layers, checked on
hand-written HLO and events, and one real traced step of a tiny network."""

from __future__ import annotations

import pytest

from benchmarks import profile_step as ps

D1_OP = "jit(train_step)/jvp(jit(apply))/ResnetGenerator/d1/conv/dot_general"
TRUNK_OP = (
    "jit(train_step)/transpose(jvp(jit(apply)))/ResnetGenerator/"
    "ResnetGenerator._residual_blocks/while/body/closed_call/ResnetBlock/conv1/conv/add"
)
HLO = f"""\
%f.3 (param_0: f32[4]) -> f32[4] {{
  %param_0 = f32[4]{{0}} parameter(0)
  ROOT %negate.1 = f32[4]{{0}} negate(%param_0), metadata={{op_name="jit(train_step)/neg"}}
}}

ENTRY %main.9 (p: f32[4]) -> f32[4] {{
  %p = f32[4]{{0}} parameter(0)
  %dot_general.12 = f32[4]{{0}} dot(%p, %p), metadata={{op_name="{D1_OP}" stack_frame_id=3}}
  %add_fusion.7 = f32[4] fusion(%dot_general.12), calls=%f.3, metadata={{op_name="{TRUNK_OP}"}}
  ROOT %copy.2 = f32[4]{{0}} copy(%add_fusion.7)
}}
"""


def test_instruction_op_names_reads_each_instruction_and_its_metadata():
    names = ps.instruction_op_names(HLO)
    assert names["dot_general.12"] == D1_OP
    assert names["add_fusion.7"] == TRUNK_OP
    assert names["copy.2"] == ""  # ROOT, no metadata
    assert names["negate.1"] == "jit(train_step)/neg"  # inside a fused computation
    assert "main.9" not in names  # a computation's header is not an instruction


@pytest.mark.parametrize(
    ("depth", "expected"),
    [
        (1, "ResnetGenerator"),
        (2, "ResnetGenerator/residual_blocks"),
        (3, "ResnetGenerator/residual_blocks/ResnetBlock"),
        (9, "ResnetGenerator/residual_blocks/ResnetBlock/conv1/conv"),
    ],
)
def test_layer_of_keeps_module_names_only(depth, expected):
    assert ps.layer_of(TRUNK_OP, depth) == expected


def test_layer_of_an_operation_outside_every_module():
    assert ps.layer_of("jit(train_step)/add", 2) == ps.OUTSIDE
    assert ps.layer_of("", 2) == ps.OUTSIDE


def test_attribute_sums_per_step_by_layer_direction_and_kind():
    names = ps.instruction_op_names(HLO)
    events = [
        ps.Event("dot_general.12", 3_000),
        ps.Event("dot_general.12", 5_000),
        ps.Event("add_fusion.7", 4_000),
        ps.Event("copy.2", 2_000),
        ps.Event("ThunkExecutor::Execute", 1_000_000),  # the runtime's own: not counted
        ps.Event("ThreadpoolListener::StartRegion", 0),
    ]
    profile = ps.attribute(events, names, steps=2, depth=2)
    assert profile.by_layer == {
        ("ResnetGenerator/d1", "forward"): 4_000,
        ("ResnetGenerator/residual_blocks", "backward"): 2_000,
        (ps.OUTSIDE, "forward"): 1_000,
    }
    assert profile.by_kind == {"dot_general": 4_000, "add_fusion": 2_000, "copy": 1_000}
    assert profile.calls_by_kind == {"dot_general": 1, "add_fusion": 0.5, "copy": 0.5}
    assert profile.total_ns == 7_000
    report = ps.markdown(profile, "t", [0.5, 0.25, 1.0], top=10)
    assert "median 0.500 s of 3 traced steps" in report
    assert "| ResnetGenerator/d1 | 0.0 | 0.0 | 57.1% |" in report  # 4000 of 7000 ns
    assert "| dot_general | 0.0 | 1 | 57.1% |" in report


def test_profile_of_a_traced_tiny_step(tmp_path, capsys):
    out = tmp_path / "report.md"
    trace = tmp_path / "trace"
    argv = ["--size", "32", "--ngf", "8", "--ndf", "8", "--n-blocks", "2", "--steps", "1"]
    assert ps.main([*argv, "--warmup", "1", "--trace-dir", str(trace), "--out", str(out)]) == 0
    report = capsys.readouterr().out
    assert out.read_text() == report
    rows = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:3]
        for line in report.splitlines()
        if line.startswith("| ") and line.count("|") == 5
    }
    # Every layer of both networks ran forward and backward in the step.
    layers = ("ResnetGenerator/residual_blocks", "ResnetGenerator/d1", "NLayerDiscriminator/C1")
    for layer in layers:
        forward, backward = (float(ms) for ms in rows[layer])
        assert forward > 0 and backward > 0, layer
    # A trace folder already holding a trace is refused, not mixed with a new one.
    with pytest.raises(SystemExit):
        ps.main([*argv, "--trace-dir", str(trace)])
    assert "already holds a trace" in capsys.readouterr().err


def test_bad_output_paths_are_refused_before_compiling(tmp_path, capsys):
    """An --out in a missing folder, or a --trace-dir that is a file, is refused at once
    (naming the path), not after the minutes of compiling and tracing."""
    missing = tmp_path / "no_such_folder" / "report.md"
    with pytest.raises(SystemExit):
        ps.main(["--out", str(missing)])
    assert f"--out {missing}: folder {missing.parent} does not exist" in capsys.readouterr().err
    a_file = tmp_path / "trace.txt"
    a_file.write_text("not a folder")
    with pytest.raises(SystemExit):
        ps.main(["--trace-dir", str(a_file)])
    assert f"--trace-dir {a_file} is a file, not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "not a folder"  # left as it was
