module vmenc-embed-example

go 1.19

require github.com/vmenc/vmenc/bindings/go v0.0.0
