module github.com/vmenc/vmenc/bindings/go

go 1.19
