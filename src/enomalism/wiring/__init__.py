"""What joins the layers when the server starts, above services/: the job table (each kind
of transaction -> the services' function that runs it), which the composition root
(api/app.py) hands to jobs/'s Runner. Nothing below imports it, so jobs/ and runtime/ never
reach services/."""
