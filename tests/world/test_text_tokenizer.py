from illume_plus.world import examples
from illume_plus.world.text import CHAT
from illume_plus.world.text_tokenizer import build_world_text_tokenizer


def test_world_tokenizer_covers_world_text_compactly():
    tok = build_world_text_tokenizer()
    assert tok.eos_token == "<|endoftext|>" and "<|im_start|>" in tok.get_vocab()
    for e in examples("test", 20):
        for text in (e.caption, e.qa.question, e.qa.answer, e.edit.instruction):
            ids = tok(text)["input_ids"]
            assert tok.decode(ids) == text
            assert len(ids) <= len(text.split()) + 6  # about one token per word
    for word in ("circle", " triangle", " purple", " orange", " bottom", "Generate"):
        assert len(tok.tokenize(word)) == 1, word
    assert tok.decode(tok(CHAT[0][1])["input_ids"]) == CHAT[0][1]
