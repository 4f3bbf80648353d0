"""Rendering the Ansible tree: pure functions in the middle, thin I/O around them.

- ``yamlout``: ``dump`` (fast) / ``dump_reference`` (the original's PyYAML dumper), same bytes.
- ``tree``: ``render_tree(infra, lock) -> {relative path: managed YAML}``.
- ``managed``: ``managed_block``, ``merge_managed``, ``extract_managed`` (the markers).
- ``write``: ``diff_tree``, ``apply_tree`` (atomic), ``find_orphans``, ``prune``.
"""
