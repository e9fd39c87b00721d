"""Why the Milvus index flushes (docs/milvus.md, "Why the flush matters"): recall@100 of Milvus
2.3.5 on N random 65-dimensional vectors, first as HTTP API v1 leaves a collection (AUTOINDEX,
rows never flushed: growing segments searched through the interim IVF index), then after a flush
and the index build, at several HNSW `ef`.

An investigation tool, not part of the service: needs pymilvus 2.3.5 (with numpy<2, pandas<2.2,
marshmallow<4 in its venv) and a running milvus-server on PORT:
    V/bin/python benches/milvus_growing.py N PORT
"""
import json
import sys
import time
import urllib.request

import numpy as np
from pymilvus import Collection, connections, utility

N, PORT = int(sys.argv[1]), int(sys.argv[2])
DIM, NAME = 65, f"growing_check_{N}"
rng = np.random.default_rng(1)
X = rng.standard_normal((N, DIM)).astype(np.float32)
Q = rng.standard_normal((50, DIM)).astype(np.float32)


def http(path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}/v1/vector/{path}",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req).read())


connections.connect(host="127.0.0.1", port=PORT)
if utility.has_collection(NAME):
    utility.drop_collection(NAME)
# As HTTP API v1 creates a collection: AUTOINDEX, loaded at once.
http("collections/create", {"collectionName": NAME, "dimension": DIM, "metricType": "L2",
                            "primaryField": "id", "vectorField": "vector"})
c = Collection(NAME)
for s in range(0, N, 10000):
    c.insert([{"vector": X[i].tolist(), "slot": int(i)} for i in range(s, min(N, s + 10000))])
truth = [set(np.argsort(((X - q) ** 2).sum(1))[:100].tolist()) for q in Q]


def recall(ef=None):
    params = {"metric_type": "L2", "params": {"ef": ef} if ef else {}}
    hits = 0
    for q, t in zip(Q, truth):
        r = c.search([q.tolist()], "vector", params, limit=100, output_fields=["slot"],
                     consistency_level="Strong")
        hits += len({h.entity.get("slot") for h in r[0]} & t)
    return hits / (100 * len(Q))


time.sleep(3)
print("index:", [(i.field_name, i.params) for i in c.indexes])
print("recall@100 without a flush:", recall())
c.flush()
utility.wait_for_index_building_complete(NAME)
while any(not s.index_name for s in utility.get_query_segment_info(NAME)):
    time.sleep(2)
print("segments after the flush:",
      [(s.num_rows, s.state, s.index_name) for s in utility.get_query_segment_info(NAME)])
for ef in (None, 200, 400, 800, 1600):
    print("recall@100 after the flush, ef", ef, ":", recall(ef))
utility.drop_collection(NAME)
