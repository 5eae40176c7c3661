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


def test_mixture_leaves_out_unweighted_sources_and_reads_codes_from_the_given_folder(tmp_path):
    from illume_plus.world.mllm_data import mixture_yaml

    path = tmp_path / "mixture.yaml"
    path.write_text(mixture_yaml({"questions": 1.0, "chat": 0.0, "captions": 2.0, "edits": 0.0}, codes_dir="codes_vq"))
    sources = load_mixture(path)
    assert [(s.name, s.weight) for s in sources] == [("questions", 1.0), ("captions", 2.0)]
    assert sources[1].codes.replace("\\", "/").endswith("codes_vq/t2i")
