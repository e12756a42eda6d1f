"""An in-memory stand-in for the parts of the Elasticsearch client the indexer and worker use.

It records every call in order, so tests can assert the exact sequence (create, bulk, refresh,
alias swap, delete) without a node; ``down`` makes every call fail as an unreachable node does.
"""

from elastic_transport import ConnectionError as TransportConnectionError


class FakeIndices:
    def __init__(self, es: "FakeElasticsearch"):
        self.es = es

    def create(self, *, index, settings=None, mappings=None):
        self.es._call("indices.create", index=index)
        self.es.indices_docs[index] = {}
        self.es.mappings[index] = {"settings": settings, "mappings": mappings}

    def refresh(self, *, index):
        self.es._call("indices.refresh", index=index)

    def exists(self, *, index):
        return index in self.es.indices_docs or index in self.es.aliases

    def exists_alias(self, *, name):
        return name in self.es.aliases

    def get_alias(self, *, name):
        return {self.es.aliases[name]: {"aliases": {name: {}}}}

    def update_aliases(self, *, actions):
        self.es._call("indices.update_aliases", actions=actions)
        for action in actions:
            ((op, args),) = action.items()
            if op == "add":
                self.es.aliases[args["alias"]] = args["index"]
            elif op == "remove":
                self.es.aliases.pop(args["alias"], None)
            elif op == "remove_index":
                self.es.indices_docs.pop(args["index"], None)

    def delete(self, *, index):
        self.es._call("indices.delete", index=index)
        self.es.indices_docs.pop(index, None)


class FakeElasticsearch:
    """Indices are dicts of id -> source; aliases map to one index."""

    def __init__(self, *, down: bool = False, refuse: set[str] | None = None):
        self.down = down
        self.refuse = refuse or set()  # ids whose index action the node refuses (e.g. a mapping error)
        self.calls: list[tuple[str, dict]] = []
        self.indices_docs: dict[str, dict[str, dict]] = {}
        self.mappings: dict[str, dict] = {}
        self.aliases: dict[str, str] = {}
        self.indices = FakeIndices(self)

    def _call(self, name: str, **kwargs) -> None:
        if self.down:
            raise TransportConnectionError("Connection refused (fake node is down)")
        self.calls.append((name, kwargs))

    def _resolve(self, name: str, *, require_alias: bool = False) -> str:
        if name in self.aliases:
            return self.aliases[name]
        if require_alias:
            raise KeyError(name)
        return name

    def docs(self, alias: str) -> dict[str, dict]:
        """Return the documents behind ``alias``."""
        return self.indices_docs.get(self.aliases.get(alias, alias), {})

    def bulk(self, *, operations, refresh=None, require_alias=None):
        self._call("bulk", count=sum(1 for op in operations if len(op) == 1 and next(iter(op)) in _OPS))
        items, lines = [], iter(operations)
        for line in lines:
            ((op, meta),) = line.items()
            source = next(lines) if op == "index" else None
            items.append({op: self._apply(op, meta, source, require_alias=bool(require_alias))})
        return {"errors": any(next(iter(item.values()))["status"] >= 300 for item in items), "items": items}

    def _apply(self, op, meta, source, *, require_alias):
        try:
            index = self._resolve(meta["_index"], require_alias=require_alias)
        except KeyError:
            return {"_index": meta["_index"], "_id": meta["_id"], "status": 404, "error": {"type": "index_not_found"}}
        docs = self.indices_docs.setdefault(index, {})
        result = {"_index": index, "_id": meta["_id"]}
        if op == "index" and meta["_id"] in self.refuse:
            return {**result, "status": 400, "error": {"type": "mapper_parsing_exception"}}
        if op == "index":
            docs[meta["_id"]] = source
            return {**result, "status": 201}
        return {**result, "status": 200 if docs.pop(meta["_id"], None) is not None else 404}

    def search(self, *, index, body):
        self._call("search", index=index, body=body)
        docs = self.docs(index)
        ordered = sorted(docs.items(), key=lambda item: item[1]["id"])
        after = body.get("search_after", [None])[0]
        if after is not None:
            ordered = [item for item in ordered if item[1]["id"] > after]
        page = ordered[: body.get("size", 10)]
        fields = body.get("_source") or []
        return {
            "hits": {
                "hits": [
                    {"_id": pk, "_score": 1.0, "_source": {f: doc.get(f) for f in fields}, "sort": [doc["id"]]}
                    for pk, doc in page
                ]
            }
        }


_OPS = {"index", "delete"}
