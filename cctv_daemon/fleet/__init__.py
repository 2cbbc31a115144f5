"""The fleet's pure parts: which shard records a camera (rendezvous hashing) and who this node is (shard, node
id). Not wired into the daemon yet: catalog-by-URL and leases come first (issue 14, docs/scale-out.md)."""
