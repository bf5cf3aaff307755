"""Jobs through the blocking client against a real instance: submit and
wait, exit codes, failures, cancel, the jobs() filters, eventlogs,
dependencies, and bad input."""

import errno

import pytest

import loom


def test_submit_and_wait_report_the_exit_code(client):
    ok = client.submit(["true"])
    assert isinstance(ok.id, loom.JobId) and str(ok.id).startswith("\u0192")
    r = ok.wait(timeout=30)
    assert (r.id, r.result, r.success, r.returncode, r.status) == (ok.id, "COMPLETED", True, 0, 0)
    assert r.check() is r
    three = client.submit(["sh", "-c", "exit 3"]).wait(timeout=30)
    assert (three.result, three.success, three.returncode) == ("FAILED", False, 3)
    killed = client.submit(["sh", "-c", "kill -9 $$"]).wait(timeout=30)
    assert killed.returncode == 128 + 9


def test_a_failing_job_is_a_result_and_check_raises(client):
    r = client.submit(["/no/such/command"]).wait(timeout=30)
    assert (r.result, r.returncode) == ("FAILED", 127)
    with pytest.raises(loom.JobFailed) as e:
        r.check()
    assert e.value.result is r and "FAILED: status 32512" in str(e.value)
    with pytest.raises(loom.JobFailed):
        client.submit(["false"]).result(timeout=30)


def test_the_job_runs_where_and_as_asked(client, tmp_path):
    out = tmp_path / "out"
    r = client.submit(["sh", "-c", 'echo "$PWD $GREETING $LOOM_JOB_ID"'], cwd=str(tmp_path),
                      env={"GREETING": "hi"}, output=str(out), nodes=2).wait(timeout=30)
    assert r.success
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and all(line.startswith("%s hi " % tmp_path) for line in lines)


def test_cancel_ends_a_running_job(client):
    job = client.submit(["sleep", "300"])
    for e in job.eventlog(timeout=30):
        if e.name == "start":
            break
    job.cancel(note="no longer needed")
    r = job.wait(timeout=30)
    assert (r.result, r.returncode) == ("CANCELED", 1)
    assert r.exception["type"] == "cancel" and r.exception["note"] == "no longer needed"
    with pytest.raises(loom.LoomError) as e:
        job.cancel()
    assert e.value.errno == errno.EINVAL and "is inactive" in e.value.strerror
    with pytest.raises(loom.LoomError) as e:
        client.cancel(12345)
    assert (e.value.errno, e.value.strerror) == (errno.ENOENT, "unknown job \u01924fr")


def test_jobs_filters_as_loom_jobs(client):
    done = client.submit(["true"], name="py-filter")
    failed = client.submit(["false"], name="py-filter")
    held = client.submit(["true"], name="py-filter", urgency="hold")
    done.wait(timeout=30), failed.wait(timeout=30)
    try:
        active = {j["id"] for j in client.jobs()}
        assert held.id in active and done.id not in active
        assert held.id in {j["id"] for j in client.jobs("pending")}
        assert held.id not in {j["id"] for j in client.jobs("running")}
        mine = client.jobs(all=True, name="py-filter")
        assert [j["id"] for j in mine] == [held.id, failed.id, done.id]  # newest first
        assert [j["id"] for j in client.jobs("completed", name="py-filter")] == [done.id]
        assert [j["id"] for j in client.jobs(["failed"], name="py-filter")] == [failed.id]
        assert [j["id"] for j in client.jobs(ids=[str(done.id), failed.id.dec])] == [failed.id, done.id]
        assert len(client.jobs(all=True, count=2)) == 2
        assert client.jobs(ids=[done.id])[0]["state"] == "INACTIVE"
        assert client.jobs(since="-1h", name="py-filter")[0]["id"] == held.id
    finally:
        client.cancel(held)
    with pytest.raises(ValueError, match='unknown state or result "bogus"'):
        client.jobs("bogus")


def test_eventlog_follows_a_job_to_clean(client):
    job = client.submit(["sleep", "0.2"])
    names = [e.name for e in client.eventlog(job.id, timeout=30)]
    assert names[0] == "submit" and names[-1] == "clean"
    assert names.index("start") < names.index("finish") < names.index("clean")
    again = list(job.eventlog(follow=False, timeout=30))
    assert [e.name for e in again] == names
    finish = next(e for e in again if e.name == "finish")
    assert finish.context == {"status": 0} and finish.timestamp > again[0].timestamp


def test_every_wait_can_time_out_and_the_job_goes_on(client):
    held = client.submit(["true"], urgency="hold")
    with pytest.raises(loom.TimedOut) as e:
        held.wait(timeout=0.2)
    assert e.value.errno == errno.ETIMEDOUT and isinstance(e.value, TimeoutError)
    with pytest.raises(loom.TimedOut):
        list(held.eventlog(timeout=0.2))
    client.rpc("job-manager.urgency", {"id": int(held.id), "urgency": 16})
    assert held.wait(timeout=30).success


def test_afterok_chains_run_in_order_and_a_failure_breaks_the_chain(client):
    a = client.submit(["sleep", "0.2"])
    b = client.submit(["true"], dependency="afterok:%s" % a.id)
    c = client.submit(["true"], dependency=["afterok:" + b.id.dec])
    assert c.wait(timeout=30).success and b.wait(timeout=30).success
    ends = {j.id: {e.name: e.timestamp for e in j.eventlog(follow=False)} for j in (a, b, c)}
    assert ends[a.id]["clean"] <= ends[b.id]["alloc"] and ends[b.id]["clean"] <= ends[c.id]["alloc"]
    assert "dependency-add" in ends[b.id]

    bad = client.submit(["false"])
    after = client.submit(["true"], dependency="afterok:%s" % bad.id)
    r = after.wait(timeout=30)
    assert r.result == "FAILED" and r.exception["type"] == "dependency"
    assert "can never be met" in r.exception["note"]


def test_submit_takes_a_whole_jobspec(client):
    js = loom.jobspec(["sh", "-c", "exit 4"], name="whole")
    job = client.submit(js)
    assert job.wait(timeout=30).returncode == 4
    assert client.jobs(ids=[job.id])[0]["name"] == "whole"
    with pytest.raises(TypeError, match="takes no job options"):
        client.submit(js, nodes=1)


def test_submit_many_stores_all_in_one_request(client):
    jobs = client.submit_many([["true"], ["false"], loom.jobspec(["true"])])
    assert [j.wait(timeout=30).returncode for j in jobs] == [0, 1, 0]


def test_bad_input_is_a_clear_exception(client):
    with pytest.raises(TypeError, match="did you mean 'ntasks'"):
        client.submit(["true"], ntask=2)
    with pytest.raises(ValueError, match='invalid job id "nope"'):
        client.wait("nope")
    with pytest.raises(ValueError, match="urgency must be 0-31"):
        client.submit(["true"], urgency=99)
    with pytest.raises(loom.LoomError) as e:
        client.submit(["true"], nodes=5)  # the broker refuses it
    assert e.value.errno == errno.EINVAL and "the instance has 2 ranks" in str(e.value)
    with pytest.raises(loom.LoomError) as e:
        client.wait(12345)
    assert e.value.errno == errno.ENOENT


def test_threads_share_one_client(client):
    import threading

    results, errors = [], []

    def work(n):
        try:
            jobs = [client.submit(["sh", "-c", "exit %d" % ((n + i) % 4)]) for i in range(5)]
            results.extend((n + i) % 4 == j.wait(timeout=60).returncode for i, j in enumerate(jobs))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 40 and all(results)


def test_cancel_all_filters_by_name(client):
    held = [client.submit(["true"], name="py-cancel-all", urgency="hold") for _ in range(3)]
    other = client.submit(["true"], name="py-other", urgency="hold")
    try:
        assert sorted(client.cancel_all(name="py-cancel-all", dry_run=True)) == sorted(j.id for j in held)
        assert sorted(client.cancel_all(name="py-cancel-all", states="pending")) == sorted(j.id for j in held)
        assert all(j.wait(timeout=30).result == "CANCELED" for j in held)
        assert client.jobs(ids=[other.id])[0]["state"] != "INACTIVE"
    finally:
        client.cancel(other)


def test_a_listing_over_one_answer_comes_whole(client):
    # 100 held jobs of 100 kB names: 10 MB, over the 8 MiB the job
    # manager puts in one answer; the client asks on from the last job.
    name = "n" * 100000
    jobs = client.submit_many([["true"]] * 100, urgency="hold", name=name)
    ids = [j.id for j in jobs]
    try:
        first = client.rpc("job-manager.list", {})
        assert first["more"] is True and 0 < len(first["jobs"]) < 100
        listed = client.jobs(name=name)
        assert [j["id"] for j in listed] == list(reversed(ids))  # each once, newest first
    finally:
        client.cancel(*ids)
