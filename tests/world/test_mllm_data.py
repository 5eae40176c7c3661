from illume_plus.data.mllm.dataset import load_mixture
from illume_plus.data.mllm.records import read_records
from illume_plus.world import example
from illume_plus.world.mllm_data import write_world_mllm_data


def test_world_mllm_data_reads_in_the_mllm_formats(tmp_path):
    paths = write_world_mllm_data(tmp_path, "val", num=4)
    assert [s.format for s in load_mixture(tmp_path / "mixture.yaml")] == ["conversation", "text", "t2i", "edit"]
    for kind, path in paths.items():
        assert len(read_records(path, kind)) == 4, kind  # every line valid
    e = example("val", 0)
    assert e.caption in paths["t2i"].read_text() and e.edit.instruction in paths["edit"].read_text()
    assert (tmp_path / "images" / "val_0000000_edit.png").is_file()
