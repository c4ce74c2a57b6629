"""The data layer: SFT trajectories and pivot rows in, candidates and trainer batches out.

Modules, in pipeline order: `sources` (files -> rows), `openai_chat` / `pivot_rows` (rows ->
records, with located errors), `readers` (the format registry), `turns` (trajectory ->
candidates), `chat` (chat template -> token ids, token check), `extraction` (one extract run),
`records` (ArrayRecord shards), `loader` (grain batches); `schema` holds the record types and
`tokenizer` the project tokenizer. See docs/data.md.
"""
