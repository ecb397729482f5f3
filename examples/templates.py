"""Templates: a shared base in a file, derived templates that extend it, variables, and composition in code.

Run: python examples/templates.py   (no network: it prints the wire JSON of the rendered requests)
"""

from __future__ import annotations

from pathlib import Path

import chatdsl

HERE = Path(__file__).parent / "templates"


def main() -> None:
    """Load the template library, list it, render a few requests and compose one in code."""
    library = chatdsl.TemplateLibrary(HERE)  # every file is read and checked here, once

    print("# The library")
    for info in library.describe():
        print(f"{info.name}: {info.description}")
        for var in info.variables:
            default = "required" if var.required else f"default {var.default!r}"
            print(f"    ${var.name} ({default}) {var.description}")

    message = "Hello, my order A-981 (a $35 kettle) has not arrived. Can you check? {urgent}"

    # Values are inserted literally: the "$35" and "{urgent}" in the message stay as they are.
    summary = library["summarize"].render(text=message)
    extract = library["extract"].render(text=message)
    # support_fr extends support, which extends base: same tools, its own default language.
    support = library["support_fr"].render(question=message)

    for name, request in [("summarize", summary), ("extract", extract), ("support_fr", support)]:
        request.validate()
        print(f"\n# {name}")
        print(request.to_json(indent=2))

    # Composition in code: the base's fields, then the overlay's (its set fields win, messages append).
    # Compose first, render last: a rendered request is plain text (its "$$12.50" is now "$12.50").
    base = library["base"].request
    overlay = chatdsl.chat().with_temperature(0.7).user("Write a haiku about $topic.")
    haiku = (base | overlay).render(language="German", topic="parcels")
    haiku.validate()
    print("\n# base | overlay")
    print(haiku.to_json(indent=2))

    # The templates themselves never change: each render returned a new request.
    assert library["summarize"].request.variables == ("language", "sentences", "text")


if __name__ == "__main__":
    main()
