module vmenc-embed-example

go 1.19

require vmenc v0.0.0

replace vmenc => ../../../bindings/go
