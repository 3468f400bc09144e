"""The sample workspace of ``make run`` and ``publishd demo``.

Three collections that point at each other, and a draft that needs all four
phases: an edit, a delete of a book still listed in a menu (so the menu is
cleared first), and two new records that point at each other (created without
the pointers, then backfilled).
"""

from __future__ import annotations

from domain.json_types import JsonObject

SEED: JsonObject = {
    "collections": {
        "authors": {
            "referenceFields": {},
            "items": [
                {
                    "id": "a-hemingway",
                    "fieldData": {"name": "Ernest Hemingway", "slug": "hemingway"},
                },
                {"id": "a-woolf", "fieldData": {"name": "Virginia Woolf", "slug": "woolf"}},
            ],
        },
        "books": {
            "referenceFields": {"author": {"target": "authors", "multiple": False}},
            "items": [
                {
                    "id": "b-oldman",
                    "fieldData": {
                        "title": "The Old Man and the Sea",
                        "slug": "the-old-man-and-the-sea",
                        "author": "a-hemingway",
                    },
                },
                {
                    "id": "b-lighthouse",
                    "fieldData": {
                        "title": "To the Lighthouse",
                        "slug": "to-the-lighthouse",
                        "author": "a-woolf",
                    },
                },
                {
                    "id": "b-dalloway",
                    "fieldData": {
                        "title": "Mrs Dalloway",
                        "slug": "mrs-dalloway",
                        "author": "a-woolf",
                    },
                },
            ],
        },
        "site1/menus": {
            "referenceFields": {"items": {"target": "books", "multiple": True}},
            "items": [
                {
                    "id": "m-main",
                    "fieldData": {
                        "slug": "main",
                        "items": ["b-oldman", "b-lighthouse", "b-dalloway"],
                    },
                },
            ],
        },
    }
}

SCHEMAS: dict[str, JsonObject] = {
    "authors": {
        "fields": [{"name": "favourite_book", "reference": True, "referenceTarget": "books"}]
    },
    "books": {"fields": [{"name": "author", "reference": True, "referenceTarget": "authors"}]},
    "site1/menus": {
        "fields": [
            {"name": "items", "reference": True, "referenceTarget": "books", "multiple": True}
        ]
    },
}

SANDBOX_COLLECTIONS: dict[str, JsonObject] = {
    "authors": {"referenceFields": {"favourite_book": {"target": "books", "multiple": False}}},
}

DRAFT_USER = "alice"
DRAFT_WRITES: dict[str, JsonObject] = {
    "books/war-and-peace.json": {
        "title": "War and Peace",
        "slug": "war-and-peace",
        "author": "@/authors/tolstoy.json",
    },
    "authors/tolstoy.json": {
        "name": "Leo Tolstoy",
        "slug": "tolstoy",
        "favourite_book": "@/books/war-and-peace.json",
    },
}
DRAFT_EDIT_PATH = "books/the-old-man-and-the-sea.json"
DRAFT_DELETES = ["books/mrs-dalloway.json"]
