import pytest

from .helpers import make_mllm_data


@pytest.fixture(scope="session")
def mllm_data(tmp_path_factory):
    """Mixture YAML of a pretokenised procedural data set (12 samples per format, 64x64)."""
    return make_mllm_data(tmp_path_factory.mktemp("mllm_data"))


@pytest.fixture(scope="session")
def tiny_processor():
    from illume_plus.mllm.config import IllumePlusConfig
    from illume_plus.mllm.processor import IllumePlusProcessor
    from illume_plus.mllm.text_tokenizer import build_tiny_text_tokenizer

    return IllumePlusProcessor.from_text_tokenizer(build_tiny_text_tokenizer(), IllumePlusConfig.from_name("tiny"))
