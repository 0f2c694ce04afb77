module github.com/wardline/wardline/boards/pc-amd64/kernel

go 1.22
