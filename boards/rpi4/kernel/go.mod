module github.com/wardline/wardline/boards/rpi4/kernel

go 1.22
