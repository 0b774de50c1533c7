"""Ten well-known facts for ``seqedit models check``: (prompt, true object, false object)."""

CHECK_FACTS: tuple[tuple[str, str, str], ...] = (
    ("The capital of France is", "Paris", "London"),
    ("The capital of Japan is", "Tokyo", "Cairo"),
    ("The Eiffel Tower is located in the city of", "Paris", "Berlin"),
    ("Water is made of hydrogen and", "oxygen", "gold"),
    ("The largest planet in the solar system is", "Jupiter", "Mercury"),
    ("William Shakespeare was born in", "England", "Brazil"),
    ("The official language of Germany is", "German", "Portuguese"),
    ("Albert Einstein was a famous", "physicist", "footballer"),
    ("The Great Wall is located in", "China", "Canada"),
    ("The chemical symbol for gold is", "Au", "Fe"),
)
