# No promote (or rollback) outside business hours: Monday to Friday,
# 09:00 to 17:59 UTC.
package helix

weekdays := {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}

in_hours if {
	weekdays[input.time.weekday]
	input.time.hour >= 9
	input.time.hour < 18
}

deny contains msg if {
	input.action in {"promote", "rollback"}
	not in_hours
	msg := sprintf("no %v outside business hours (Mon–Fri 09–18 UTC; it is %v, hour %v UTC)", [input.action, input.time.weekday, input.time.hour])
}
