// The example app berth's quickstart deploys: a small HTTP server that
// listens on $PORT and says who it is.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "5000"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		greeting := os.Getenv("GREETING")
		if greeting == "" {
			greeting = "Hello from berth!"
		}
		fmt.Fprintf(w, "%s\napp=%s release=%s dyno=%s rev=%s\n", greeting,
			os.Getenv("APP_NAME"), os.Getenv("BERTH_RELEASE"), os.Getenv("DYNO"), os.Getenv("GIT_REV"))
	})
	log.Printf("listening on :%s", port)
	log.Fatal(http.ListenAndServe(":"+port, nil))
}
