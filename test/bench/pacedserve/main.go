// Command pacedserve serves a directory over HTTP on loopback with every
// response paced at a fixed rate (one stream, as from a blob store or mirror),
// for test/bench/bundle.sh. It prints its URL on stdout and exits after -max
// (or when killed).
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

func main() {
	dir := flag.String("dir", ".", "directory to serve")
	rate := flag.Float64("rate", 100e6, "bytes per second per response")
	maxLife := flag.Duration("max", 2*time.Hour, "exit after this long")
	flag.Parse()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("http://%s\n", ln.Addr())
	go func() { time.Sleep(*maxLife); os.Exit(0) }()
	log.Fatal(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(filepath.Join(*dir, filepath.Clean("/"+r.URL.Path)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
		start, sent := time.Now(), 0
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				sent += n
				if ahead := time.Duration(float64(sent)/(*rate)*float64(time.Second)) - time.Since(start); ahead > 0 {
					time.Sleep(ahead)
				}
			}
			if err != nil {
				return
			}
		}
	})))
}
