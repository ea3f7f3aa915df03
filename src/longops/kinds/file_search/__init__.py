"""Document processing for file search stores: text extraction and chunking."""
