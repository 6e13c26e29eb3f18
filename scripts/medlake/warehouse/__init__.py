"""The warehouse: running dbt on the lake, the build record, the analysts' questions."""
