package store

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestPortMappings(t *testing.T) {
	ctx := context.Background()
	st, _, _ := testStore(t)
	must(t, st.CreateApp(ctx, "shop"))
	must(t, st.CreateApp(ctx, "other"))
	if ms, err := st.PortMappings(ctx, "shop"); err != nil || len(ms) != 0 {
		t.Fatalf("PortMappings of a new app = %v, %v", ms, err)
	}
	want := []PortMapping{
		{App: "shop", Scheme: "tcp", HostPort: 9000, ContainerPort: 7000},
		{App: "shop", Scheme: "http", HostPort: 80, ContainerPort: 5000},
	}
	must(t, st.SetPortMappings(ctx, "shop", want))
	must(t, st.SetPortMappings(ctx, "other", []PortMapping{{App: "other", Scheme: "http", HostPort: 80, ContainerPort: 8080}}))
	got, err := st.PortMappings(ctx, "shop")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("PortMappings = %v, %v; want %v (in the order set)", got, err, want)
	}
	if want[0].String() != "tcp:9000:7000" {
		t.Errorf("String() = %q", want[0].String())
	}
	all, err := st.AllPortMappings(ctx)
	if err != nil || len(all) != 3 || all[0].App != "other" {
		t.Fatalf("AllPortMappings = %v, %v", all, err)
	}

	err = st.SetPortMappings(ctx, "shop", []PortMapping{want[0], want[0]})
	if err == nil || !strings.Contains(err.Error(), "tcp:9000:7000 is given twice") {
		t.Fatalf("duplicate = %v", err)
	}
	if got, _ := st.PortMappings(ctx, "shop"); len(got) != 2 {
		t.Fatalf("a failed set changed the mappings: %v", got)
	}
	if err := st.SetPortMappings(ctx, "nope", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown app = %v", err)
	}

	// Mappings follow a rename and go with the app.
	must(t, st.RenameApp(ctx, "shop", "store"))
	if got, _ := st.PortMappings(ctx, "store"); len(got) != 2 || got[0].App != "store" {
		t.Fatalf("after rename: %v", got)
	}
	must(t, st.DeleteApp(ctx, "store"))
	if all, _ := st.AllPortMappings(ctx); len(all) != 1 {
		t.Fatalf("after delete: %v", all)
	}
	must(t, st.SetPortMappings(ctx, "other", nil))
	if all, _ := st.AllPortMappings(ctx); len(all) != 0 {
		t.Fatalf("after clear: %v", all)
	}
}
