"""A small built-in out-of-distribution set: prompts and replies unlike the demo data (code, other languages,
math, structured data, noise), for checking that an ensemble's spread rises off its training distribution."""

from __future__ import annotations

from .records import Message

__all__ = ["ood_examples"]

_OOD = [
    ("Write a Python function that reverses a linked list.",
     "def reverse(head):\n    prev = None\n    while head:\n        head.next, prev, head = prev, head, head.next\n    return prev"),
    ("Fix this SQL query.", "SELECT name, COUNT(*) FROM orders o JOIN users u ON o.user_id = u.id GROUP BY name HAVING COUNT(*) > 3;"),
    ("Écris un poème sur la mer.", "La mer s'étire sous le ciel gris, les vagues murmurent des secrets anciens aux galets polis."),
    ("¿Cuál es la capital de Australia?", "La capital de Australia es Canberra, no Sídney como mucha gente piensa."),
    ("Erkläre die Relativitätstheorie kurz.", "Zeit und Raum sind nicht absolut; sie hängen von der Bewegung des Beobachters ab."),
    ("用一句话介绍长城。", "长城是中国古代修建的防御工程，绵延数千公里。"),
    ("Integrate x^2 e^x dx.", "Integrating by parts twice: (x^2 - 2x + 2) e^x + C."),
    ("Prove that sqrt(2) is irrational.", "Suppose sqrt(2) = p/q in lowest terms; then p^2 = 2q^2, so p is even, p = 2k, q^2 = 2k^2, q even: contradiction."),
    ("Give me the JSON for a user record.", '{"id": 4821, "name": "Ada", "roles": ["admin", "dev"], "active": true, "quota": null}'),
    ("Convert to YAML.", "server:\n  host: 0.0.0.0\n  port: 8443\n  tls:\n    cert: /etc/ssl/cert.pem"),
    ("List the first primes.", "2 3 5 7 11 13 17 19 23 29 31 37 41 43 47 53 59 61 67 71 73 79 83 89 97"),
    ("Summarize the contract clause.", "The Licensee shall indemnify and hold harmless the Licensor from any and all claims arising hereunder."),
    ("asdf qwer zxcv?", "lorem ipsum dolor sit amet qwerty uiop hjkl zxcvbnm 0x3f 0x7a"),
    ("Translate to Latin: the die is cast.", "Alea iacta est."),
    ("What does this regex match? ^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}$", "It matches lower-case e-mail addresses with a dotted domain."),
    ("Write a haiku about compilers.", "Tokens become trees / the optimizer prunes them / silicon obeys"),
    ("Balance: Fe + O2 -> Fe2O3", "4 Fe + 3 O2 -> 2 Fe2O3"),
    ("Give the chess opening moves of the Ruy Lopez.", "1. e4 e5 2. Nf3 Nc6 3. Bb5"),
    ("Write a bash one-liner to count lines in all .py files.", "find . -name '*.py' -print0 | xargs -0 wc -l | tail -1"),
    ("Dime un refrán.", "Más vale pájaro en mano que ciento volando."),
    ("What is the derivative of sin(x) cos(x)?", "cos^2(x) - sin^2(x), which is cos(2x)."),
    ("Render a markdown table of planets.", "| planet | moons |\n| --- | --- |\n| Mars | 2 |\n| Jupiter | 95 |"),
    ("Explain a mutex in Rust.", "std::sync::Mutex<T> guards data; lock() returns a MutexGuard that unlocks when dropped."),
    ("Hex dump please.", "00000000  7f 45 4c 46 02 01 01 00  00 00 00 00 00 00 00 00  |.ELF............|"),
]


def ood_examples() -> list[tuple[tuple[Message, ...], str]]:
    """``(prompt, reply)`` pairs far from the built-in instruction-following demo set.

    >>> len(ood_examples()) >= 20, ood_examples()[0][0][0].role
    (True, 'user')
    """
    return [((Message("user", prompt),), reply) for prompt, reply in _OOD]
