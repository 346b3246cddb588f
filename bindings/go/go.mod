module vmenc

go 1.19
